#!/usr/bin/env python
"""The package smoke project's manage.py (tools/package_smoke.py copies it to a temporary dir)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
