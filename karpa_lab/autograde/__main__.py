"""``python -m karpa_lab.autograde``: release, autograde, course (see :mod:`karpa_lab.autograde.pipeline`)."""

from karpa_lab.autograde.pipeline import main

main()
