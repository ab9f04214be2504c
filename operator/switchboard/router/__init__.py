"""The router: the front door that sends each request to a healthy plugin."""
