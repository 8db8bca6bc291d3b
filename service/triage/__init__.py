"""Triage intelligence on Chinese text (issue 13): segmentation, suggestions, duplicates, hot
issues and answer suggestions. :mod:`service.triage.text` is the one tokenizer they all share."""
