"""`python -m landsentry ...`: the same as the `landsentry` command (and what torchrun and the service's children run)."""
import sys

from landsentry.cli import main

sys.exit(main())
