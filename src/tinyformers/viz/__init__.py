"""Figures the tasks and apps draw: matplotlib set-up and attention views (PNG and HTML)."""
