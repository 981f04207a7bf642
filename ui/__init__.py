"""The Gradio web app over the results database (never imports torch)."""
