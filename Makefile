# The two commands of the README. Both set up .venv first (idempotent, fast when done).
.PHONY: run test setup

run:
	bash scripts/setup.sh
	.venv/bin/python -m streamlit run app.py

test:
	bash scripts/setup.sh --test
	.venv/bin/python -m pytest
