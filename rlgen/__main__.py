"""``python -m rlgen`` (and ``torchrun ... -m rlgen``) is the ``rlgen`` command."""

from rlgen.cli.main import main

main()
