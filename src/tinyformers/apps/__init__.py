"""What talks to people: the command line, the challenge report, the HTTP server and chat with a PDF."""
