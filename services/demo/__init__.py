"""``streamrec demo``/``produce``/``feeds``: simulator traffic in, feeds out, with a report."""
