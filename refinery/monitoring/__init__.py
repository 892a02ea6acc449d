"""Monitoring a corpus over time: the profile of a committed output (profile.py), drift between two profiles
(drift.py), and what people read: the offline HTML report (report_html.py) and the data card (datacard.py)."""
