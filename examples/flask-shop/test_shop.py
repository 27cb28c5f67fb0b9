from shop import app


def test_index_lists_products():
    assert len(app.test_client().get("/").get_json()) == 2
