"""Output for people and for --json: the verb's run settings and sink, conda-style plain and
live terminal rendering, text layout, shared reports."""
