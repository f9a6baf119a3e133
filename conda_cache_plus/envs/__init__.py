"""Environments that may use a cache: conda's (registered, in envs dirs), pixi's workspaces and
global installs, and the remembered index of what each environment links."""
