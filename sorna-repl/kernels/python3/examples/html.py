import builtins

builtins._sorna_emit({"type": "text/html", "data": "<table><tr><td>1</td><td>2</td></tr></table>"})
