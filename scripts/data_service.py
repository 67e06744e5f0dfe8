"""Start a tf.data service server: the dispatcher, or a worker that runs input
pipelines for training jobs (TensorFlow's distributed preprocessing engine).

    python scripts/data_service.py dispatcher --port 5050
    python scripts/data_service.py worker --dispatcher HOST:5050 --port 5051
    python scripts/train_resnet.py --dataset folder --data-dir /shared/photos \
        --data-service grpc://HOST:5050

A training run with `--data-service grpc://HOST:PORT` sends its input pipeline
(read, decode, crop, augment, batch) to the dispatcher, which hands each worker
a share of the files (`processing_mode="distributed_epoch"`: every image once
per epoch across the workers); the workers must see the data at the same path.
Add workers (on any machine) to feed a faster trainer. The server runs until it
is stopped (Ctrl-C). docs/scaling.md has a multi-host example.
"""

import socket
import sys

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

import tensorflow as tf

from zoo.cli import args as types


def build_parser():
    p = types.Parser(description=__doc__)
    p.add_argument("role", choices=("dispatcher", "worker"))
    p.add_argument("--port", type=types.integer(0), default=0,
                   help="port to listen on (0: any free port, printed)")
    p.add_argument("--dispatcher", metavar="HOST:PORT",
                   help="worker: the dispatcher's address (grpc:// optional)")
    p.add_argument("--worker-host", default=socket.gethostname(),
                   help="worker: the host name the dispatcher reaches it at")
    p.add_argument("--work-dir", help="dispatcher: a folder for its journal (restarts "
                                      "recover their jobs)")
    return p


def start(args):
    """The running server (a `DispatchServer` or `WorkerServer`)."""
    service = tf.data.experimental.service
    if args.role == "dispatcher":
        config = service.DispatcherConfig(port=args.port, work_dir=args.work_dir,
                                          fault_tolerant_mode=args.work_dir is not None)
        return service.DispatchServer(config)
    address = args.dispatcher.removeprefix("grpc://")
    config = service.WorkerConfig(dispatcher_address=address, port=args.port,
                                  worker_address=f"{args.worker_host}:%port%")
    return service.WorkerServer(config)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.role == "worker" and not args.dispatcher:
        parser.error("worker needs --dispatcher HOST:PORT")
    if args.role == "dispatcher" and args.dispatcher:
        parser.error("--dispatcher is a worker's flag")
    server = start(args)
    target = server.target if args.role == "dispatcher" else args.dispatcher
    print(f"tf.data service {args.role} running"
          + (f" at {server.target} (train with --data-service {server.target})"
             if args.role == "dispatcher" else f", dispatcher {target}"), file=sys.stderr,
          flush=True)
    try:
        server.join()
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
