"""The admin console's static files (``static/``): ES modules, CSS and one HTML page.

No build step: the files here are what the browser runs. ``server/api/console.py`` serves them.
"""
