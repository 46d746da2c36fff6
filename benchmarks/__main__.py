"""``python -m benchmarks --out FILE.json [--quick] [--sizes N ...] [--skip speed|browser|quality]``."""

from benchmarks.run import main

raise SystemExit(main())
