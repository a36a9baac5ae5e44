"""The try-the-model widget of chapter 11: an image in; its class, warnings, Grad-CAM out."""
