# The commands of the README. Each sets up .venv first (idempotent, fast when done).
.PHONY: run test setup screenshots bench

setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/python -m streamlit run app.py

# Screenshots go to a temporary folder during tests, so `make test` leaves git status clean.
test:
	bash scripts/setup.sh --test
	.venv/bin/python -m pytest

# Refresh the README's images: the browser tests, writing their screenshots to docs/screenshots.
screenshots:
	bash scripts/setup.sh --test
	ATTNVIZ_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest -m browser

# The full benchmark (tens of minutes on 2 cores); `python -m benchmarks --quick --out F.json` is a smoke run.
bench:
	bash scripts/setup.sh --test
	.venv/bin/python -m benchmarks --out benchmarks/latest.json
