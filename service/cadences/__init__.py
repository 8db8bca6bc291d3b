"""The five cadences (五诊, SPEC §5): daily inquiry, weekly clinic, monthly follow-up, quarterly joint
consultation and annual return visit. See ``docs/cadences.md``."""
