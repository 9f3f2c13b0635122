"""`python -m web`: the Gradio chat UI, a websocket client of the chat server."""
