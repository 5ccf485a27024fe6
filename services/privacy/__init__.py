"""Data rights: deletion requests (``request``), the erasure of a subject from every store
(``services.eraser``) and the export of everything stored about a user (``export``)."""
