"""A small shop API: `/` lists products, `/health` checks the app, `/products/<id>` is
cacheable by Varnish. Run it with `gunicorn shop:app --bind 0.0.0.0:$PORT`."""

from flask import Flask, abort, jsonify

app = Flask(__name__)

PRODUCTS = {1: {"id": 1, "name": "teapot", "price": 18}, 2: {"id": 2, "name": "cup", "price": 4}}


@app.get("/")
def index():
    return jsonify(sorted(PRODUCTS.values(), key=lambda p: p["id"]))


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/products/<int:product_id>")
def product(product_id):
    if product_id not in PRODUCTS:
        abort(404)
    response = jsonify(PRODUCTS[product_id])
    response.headers["Cache-Control"] = "public, max-age=60"
    return response
