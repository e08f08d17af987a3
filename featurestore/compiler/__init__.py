"""Definitions -> engine-neutral plans (ir) that every engine renders."""
