"""The interactive try-the-model widget (chapter 11)."""
