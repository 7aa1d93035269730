#!/usr/bin/env python3
"""Real server for the rvs network-namespace lab (stdlib only).

HTTP (threaded, HTTP/1.1 keep-alive):
  GET /            -> "<name>\n"      (on --http-port and every --also-http-port)
  GET /blob        -> deterministic --blob-mb MiB body (identical on every server)
  GET /blob.sha256 -> "<hex sha256 of /blob>\n"
  GET /client      -> "<peer ip> <peer port>\n"  (what the server sees as the client;
                      with NAT load balancing this must be the real client address)
  HEAD is supported for all of the above; anything else is 404.
UDP: every datagram is answered with b"<name> " + payload.

Never does a name lookup (HTTPServer.server_bind would call socket.getfqdn).
"""

import argparse
import hashlib
import http.server
import os
import random
import signal
import socket
import socketserver
import sys
import threading

# Fixed seed: every server (and every run) serves byte-identical blobs, so a
# client can check integrity against any server's /blob.sha256.
BLOB_SEED = 0x5256_5321  # "RVS!"


def make_blob(size):
    # random.Random(int).randbytes is deterministic (MT19937) and fast (~20 ms/16 MiB).
    # Pseudo-random rather than a short repeating pattern so that shifted,
    # duplicated or reordered segments change the hash.
    return random.Random(BLOB_SEED).randbytes(size)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self):
        # Skip HTTPServer.server_bind: it calls socket.getfqdn() (a DNS lookup).
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port


def make_handler(name, blob, blob_sha):
    root_body = (name + "\n").encode()
    sha_body = (blob_sha + "\n").encode()
    blob_view = memoryview(blob)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def version_string(self):
            return "rvs-lab-server/1"

        def log_message(self, format, *args):  # noqa: A002 - stdlib signature
            pass  # quiet: tests hammer this server

        def address_string(self):
            return self.client_address[0]  # never reverse-resolve

        def _reply(self, body, ctype="text/plain", head=False):
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Server", name)
            self.end_headers()
            if head:
                return
            # Chunked writes keep memory flat and let slow clients make progress.
            step = 256 * 1024
            for off in range(0, len(body), step):
                self.wfile.write(body[off:off + step])

        def _route(self, head):
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._reply(root_body, head=head)
            elif path == "/blob":
                self._reply(blob_view, "application/octet-stream", head=head)
            elif path == "/blob.sha256":
                self._reply(sha_body, head=head)
            elif path == "/client":
                ip, port = self.client_address[:2]
                self._reply(f"{ip} {port}\n".encode(), head=head)
            else:
                body = b"not found\n"
                self.send_response(404)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        def do_GET(self):
            try:
                self._route(head=False)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def do_HEAD(self):
            try:
                self._route(head=True)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    return Handler


def udp_loop(sock, prefix):
    while True:
        try:
            data, peer = sock.recvfrom(65535)
            sock.sendto(prefix + data, peer)
        except OSError:
            continue


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="server name, returned by GET / and UDP")
    ap.add_argument("--bind", default="0.0.0.0", help="IPv4 address to listen on (literal)")
    ap.add_argument("--http-port", type=int, default=80)
    ap.add_argument("--also-http-port", type=int, action="append", default=[], metavar="PORT",
                    help="serve the same HTTP on this port too (e.g. 443 for service groups)")
    ap.add_argument("--udp-port", type=int, default=53, help="0 disables UDP")
    ap.add_argument("--blob-mb", type=int, default=16)
    ap.add_argument("--pid-file", help="written once both sockets are listening")
    args = ap.parse_args()

    blob = make_blob(args.blob_mb * 1024 * 1024)
    blob_sha = hashlib.sha256(blob).hexdigest()

    # Bind UDP before HTTP so "HTTP answers" implies "UDP is ready too".
    if args.udp_port:
        usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        usock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        usock.bind((args.bind, args.udp_port))
        threading.Thread(target=udp_loop, args=(usock, (args.name + " ").encode()),
                         daemon=True).start()

    handler = make_handler(args.name, blob, blob_sha)
    # Bind every extra port before the main one, so "port 80 answers" implies all are ready.
    for port in args.also_http_port:
        extra = Server((args.bind, port), handler)
        threading.Thread(target=extra.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()
    httpd = Server((args.bind, args.http_port), handler)

    if args.pid_file:
        tmp = args.pid_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, args.pid_file)

    # SIGTERM -> normal exit path (removes the pid file).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    extra_ports = "".join(f",{p}" for p in args.also_http_port)
    print(f"{args.name}: http {args.bind}:{args.http_port}{extra_ports} udp {args.bind}:{args.udp_port} "
          f"blob {len(blob)} bytes sha256 {blob_sha}", flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if args.pid_file:
            try:
                os.unlink(args.pid_file)
            except OSError:
                pass


if __name__ == "__main__":
    main()
