"""Self-contained HTML reports of runs (one run, or several side by side), opened offline in any browser."""
