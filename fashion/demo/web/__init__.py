"""The standalone model in a browser (onnxruntime-web, WASM) and in Node (onnxruntime-node).

Static files: ``index.html``, ``app.js`` and ``fashion-model.js`` (shared with the Node tagger
``tag-folder.mjs``); ``package.json`` pins the npm packages (``make web`` runs ``npm ci`` here).
``server.py`` serves the page, the WASM runtime from ``node_modules`` and the model on 127.0.0.1;
inference happens in the page, never on the server.
"""
