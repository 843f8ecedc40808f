# `make demo` and `make test` each do the whole set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1:8000

.PHONY: install demo test test-pg migrate check lint clean

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

install: $(BIN)/.installed

migrate: install
	$(BIN)/python manage.py migrate --noinput

# The demo always runs on the SQLite file of the project, whatever DATABASE_URL says, and signs with a key of its
# own under var/ (ignored by git).
demo: export DATABASE_URL := sqlite:///db.sqlite3
demo: export DEBUG := true
demo: export AUDIT_SIGNING_KEY_FILE := $(CURDIR)/var/keys/audit-signing.key
demo: install
	test -f var/keys/audit-signing.key || $(BIN)/python manage.py audit_keygen --out var/keys
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py audit_partitions
	$(BIN)/python manage.py demo_data
	$(BIN)/python manage.py runserver $(HOST)

test: install
	$(BIN)/pytest

test-pg: install
	DATABASE_URL=postgres://root@127.0.0.1:5432/test $(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

check: install
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) db.sqlite3
