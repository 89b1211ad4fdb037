"""The ``rlgen`` command line (click)."""
