"""Bundled search spaces (YAML data); a package so that installs ship the files."""
