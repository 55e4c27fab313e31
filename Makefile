# The two commands of the README: `make demo` and `make test`. Everything else is operations.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_SCALE ?= 200

.PHONY: demo test lint format clean serve bench-ingest bench-export bench-score bench-load simulate evaluate-fraud

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## make demo: install, migrate, load reference and demo data, print logins, serve on :8000
demo: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --scale $(DEMO_SCALE)
	$(PY) manage.py runserver 127.0.0.1:8000

## make test: lint, migrations in step with models, and the whole suite
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) manage.py makemigrations --check --dry-run --settings=config.settings.test
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles var

## make serve: gunicorn + Celery worker + beat on PostgreSQL and Redis (production settings)
serve: $(STAMP)
	mkdir -p var
	bin/serve

## Benchmarks (need DATABASE_URL naming a PostgreSQL database of their own: they wipe usage)
bench-ingest: $(STAMP)
	@case "$$DATABASE_URL" in postgres*) ;; *) echo "set DATABASE_URL to a PostgreSQL database of its own"; exit 2;; esac
	$(PY) -m bench.ingest --yes

bench-export: $(STAMP)
	@case "$$DATABASE_URL" in postgres*) ;; *) echo "set DATABASE_URL to a PostgreSQL database of its own"; exit 2;; esac
	$(PY) -m bench.export --yes

bench-score: $(STAMP)
	@case "$$DATABASE_URL" in postgres*) ;; *) echo "set DATABASE_URL to a PostgreSQL database of its own"; exit 2;; esac
	$(PY) -m bench.score --yes

bench-load: $(STAMP)
	$(PY) -m bench.load --yes

## make simulate: many workers doing random valid and invalid operations; invariants after every step
SIM_WORKERS ?= 16
SIM_OPERATIONS ?= 5000
SIM_SEED ?= 123
simulate: $(STAMP)
	@case "$$DATABASE_URL" in postgres*) ;; *) echo "set DATABASE_URL to a PostgreSQL database of its own"; exit 2;; esac
	$(PY) -m tests.simulation --workers $(SIM_WORKERS) --operations $(SIM_OPERATIONS) --seed $(SIM_SEED)

## The fraud module's quality on demo data (see README, Fraud quality)
evaluate-fraud: $(STAMP)
	$(PY) manage.py evaluate_fraud
