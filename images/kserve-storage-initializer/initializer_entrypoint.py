"""KServe's storage-initializer command line, over KServe's own storage code (kserve-storage).

KServe's pod mutator runs the init container with args `SRC_URI DEST_DIR [SRC_URI DEST_DIR ...]`
(pkg/webhook/admission/pod/storage_initializer_injector.go); every download is kserve_storage's
`Storage.download_files`. Nothing here touches storage itself.
"""

from __future__ import annotations

import sys

from kserve_storage import Storage, configure_logging, logger


def main(argv: list[str]) -> int:
    if len(argv) < 2 or len(argv) % 2:
        print("usage: initializer-entrypoint SRC_URI DEST_DIR [SRC_URI DEST_DIR ...]", file=sys.stderr)
        return 2
    configure_logging()
    sources, targets = argv[0::2], argv[1::2]
    for src, dest in zip(sources, targets, strict=True):
        logger.info("Initializing, args: src_uri [%s] dest_path[ [%s]", src, dest)
    Storage.download_files(sources, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
