"""What a chapter computes: one model's study (``experiment``) and report 000's claims
tested (``claims``). A new chapter's study goes here."""
