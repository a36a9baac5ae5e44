"""How results are shown: the figures, the book's tables (frames) and the values a
chapter glues for its prose (glued). The bottom of the report: it imports no other
part of it."""
