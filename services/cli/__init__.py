"""The ``streamrec`` command. Each area registers its sub-commands from its own module."""
