"""The web console's static files (HTML, CSS, ES modules), served by gateway/routes/console.py under /console."""
