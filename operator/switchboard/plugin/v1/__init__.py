"""`switchboard.plugin.v1`: the plugin protocol the router speaks to every plugin.

`plugin.proto` is the source; `plugin_pb2*.py(i)` are generated from it by
`hack/generate-proto.sh` and committed, so importing the protocol needs no
build step. The constant below is the one name for the error trailer.
"""

from typing import Final

#: Trailing-metadata key carrying a serialized `PluginError` on every failed call.
#: The `-bin` suffix tells gRPC the value is binary (base64 on the wire).
ERROR_METADATA_KEY: Final = "switchboard-error-bin"
