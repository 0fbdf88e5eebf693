"""Raw pyzmq floors: broker ping-pong latency (W2) and loopback tcp bandwidth (W5).

Latency path: client DEALER -> broker ROUTER (frontend) -> broker ROUTER (backend) -> worker DEALER and back,
three processes, small opaque byte payloads, no serialization of calls.
Bandwidth path: client PAIR <-> echo PAIR over tcp://127.0.0.1, zero-copy frames.
"""

import multiprocessing
import time

from benchmarks.systems.base import SystemAdapter

READY = b"READY"


def _run_broker(endpoint_pipe):
    import zmq
    context = zmq.Context()
    frontend = context.socket(zmq.ROUTER)
    backend = context.socket(zmq.ROUTER)
    frontend_port = frontend.bind_to_random_port("tcp://127.0.0.1")
    backend_port = backend.bind_to_random_port("tcp://127.0.0.1")
    endpoint_pipe.send((frontend_port, backend_port))
    poller = zmq.Poller()
    poller.register(frontend, zmq.POLLIN)
    poller.register(backend, zmq.POLLIN)
    workers = []
    next_worker = 0
    while True:
        for socket, _ in poller.poll():
            if socket is backend:
                frames = backend.recv_multipart(copy=False)
                if len(frames) == 2 and frames[1].bytes == READY:
                    workers.append(frames[0].bytes)
                    continue
                frontend.send_multipart(frames[1:], copy=False)  # [client_id, payload]
            else:
                client_id, payload = frontend.recv_multipart(copy=False)
                worker = workers[next_worker % len(workers)]
                next_worker += 1
                backend.send_multipart([worker, client_id, payload], copy=False)


def _run_echo_worker(backend_port):
    import zmq
    socket = zmq.Context().socket(zmq.DEALER)
    socket.connect(f"tcp://127.0.0.1:{backend_port}")
    socket.send(READY)
    while True:
        socket.send_multipart(socket.recv_multipart(copy=False), copy=False)


def _run_bandwidth_echo(endpoint_pipe):
    import zmq
    socket = zmq.Context().socket(zmq.PAIR)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    endpoint_pipe.send(port)
    while True:
        frame = socket.recv(copy=False)
        mode = socket.recv()
        if mode == b"echo":
            socket.send(frame, copy=False)
        else:
            socket.send(b"ack")


class PyzmqFloorSystem(SystemAdapter):
    name = "pyzmq-floor"
    description = "raw pyzmq: DEALER->broker ROUTER->worker DEALER ping-pong; PAIR tcp loopback bandwidth"
    scheduler_location = "process"

    def start(self):
        import zmq
        context = multiprocessing.get_context("spawn")
        self.processes = []
        parent_end, child_end = context.Pipe()
        broker = context.Process(target=_run_broker, args=(child_end,), daemon=True)
        broker.start()
        self.processes.append(broker)
        self.broker_pid = broker.pid
        frontend_port, backend_port = parent_end.recv()
        for _ in range(self.n_workers):
            worker = context.Process(target=_run_echo_worker, args=(backend_port,), daemon=True)
            worker.start()
            self.processes.append(worker)
        self.echo_pids = [process.pid for process in self.processes[1:]]
        parent_end, child_end = context.Pipe()
        echo = context.Process(target=_run_bandwidth_echo, args=(child_end,), daemon=True)
        echo.start()
        self.processes.append(echo)
        self.bandwidth_peer_pid = echo.pid
        bandwidth_port = parent_end.recv()

        self.zmq_context = zmq.Context()
        self.latency_socket = self.zmq_context.socket(zmq.DEALER)
        self.latency_socket.connect(f"tcp://127.0.0.1:{frontend_port}")
        self.bandwidth_socket = self.zmq_context.socket(zmq.PAIR)
        self.bandwidth_socket.connect(f"tcp://127.0.0.1:{bandwidth_port}")
        time.sleep(0.3)  # let the workers announce themselves to the broker
        for _ in range(100):
            self.ping_pong(b"warm-up")

    def stop(self):
        for process in self.processes:
            process.kill()

    def ping_pong(self, payload):
        self.latency_socket.send(payload, copy=True)
        return self.latency_socket.recv()

    def echo_large(self, buffer):
        """Send buffer to the peer process and receive it back; returns the received frame."""
        self.bandwidth_socket.send(buffer, copy=False, flags=1 << 1)  # zmq.SNDMORE
        self.bandwidth_socket.send(b"echo")
        return self.bandwidth_socket.recv(copy=False)

    def send_large(self, buffer):
        """One-way transfer of buffer, acknowledged by the peer."""
        self.bandwidth_socket.send(buffer, copy=False, flags=1 << 1)
        self.bandwidth_socket.send(b"ack")
        return self.bandwidth_socket.recv()

    def scheduler_pid(self):
        return self.broker_pid

    def worker_pids(self):
        return list(self.echo_pids)
