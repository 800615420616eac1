"""Query understanding + structured (fielded) search over catalog fields (registry name
``"structured"``): a tagger learned from the catalog maps query spans to field values, and the
top interpretations run as filters with popularity-ordered matches."""

from strategies.structured.search import StructuredParams, StructuredResult, StructuredSearch
from strategies.structured.tagger import FieldTagger, Interpretation, Slot

__all__ = ["FieldTagger", "Interpretation", "Slot", "StructuredParams", "StructuredResult",
           "StructuredSearch"]
