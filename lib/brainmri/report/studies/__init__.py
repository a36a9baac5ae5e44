"""What a chapter computes: one model's study (``experiment``) and report 000's claims
tested (``claims``), the leakage audit's figures (``leakage``). A new chapter's study goes
here."""
