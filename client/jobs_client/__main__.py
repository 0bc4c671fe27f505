"""``python -m jobs_client``: the ``jobsctl`` command, for where no console script is on ``PATH``."""

from jobs_client.cli import main

main()
