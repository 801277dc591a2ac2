#!/usr/bin/env python3
"""A tiny OpenAI-compatible upstream for LiteLLM tests: answers
POST /v1/chat/completions with the last user message it received as the
assistant's content, so a test sees what the gateway forwarded (a masked SSN
arrives as "[US_SSN_REDACTED]"). Appends every request body it received to
$ECHO_LOG (JSONL) when set. Standard library only.

    python3 echo_upstream.py PORT
"""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self.reply(200, {"object": "list", "data": [{"id": "echo", "object": "model"}]})
        else:
            self.reply(200, {"ok": True})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        log = os.environ.get("ECHO_LOG")
        if log:
            with open(log, "a") as f:
                f.write(json.dumps(body) + "\n")
        if not self.path.endswith("/chat/completions"):
            self.reply(404, {"error": {"message": "echo upstream: only /chat/completions"}})
            return
        messages = body.get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        content = text_of(users[-1].get("content")) if users else ""
        self.reply(200, {
            "id": "chatcmpl-echo",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "echo"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
