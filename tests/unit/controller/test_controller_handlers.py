"""The kopf registrations: what handlers.NoDiffBase relies on."""

import kopf

from ftscale.controller import handlers


def test_no_handler_compares_an_object_with_its_last_state():
    # NoDiffBase gives kopf an empty "essence" for every object; that is only right while no
    # on.create/update/delete/field/resume handler (kopf's "changing" handlers) or daemon/timer
    # ("spawning") needs a diff. A new such handler must drop NoDiffBase.
    registry = kopf.get_default_registry()
    assert handlers.startup  # the module's registrations are in the default registry
    assert not registry._changing.get_all_handlers()
    assert not registry._spawning.get_all_handlers()
    assert registry._watching.get_all_handlers()  # the on.event handlers the test should see


def test_the_empty_essence_never_differs():
    body = kopf.Body({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}},
                      "spec": {"x": 1}})
    assert handlers.NoDiffBase().build(body=body) == {}  # nothing copied, nothing to differ
