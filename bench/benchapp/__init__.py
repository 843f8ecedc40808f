"""A bench-only app: installed by bench/settings.py, never by the project. Tables by ``migrate --run-syncdb``."""
