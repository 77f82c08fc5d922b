"""The byoc conformance suite, run on {{ cookiecutter.target_name }} with every ``pytest``.

Each check is its own test (``test_op[Relu-2x3-f32]``, ``test_model[mlp]``...), generated
from the target's declarations. ``byoc conformance --target {{ cookiecutter.target_name }}`` runs the
same suite and writes the JSON report; expected failures go in
{{ cookiecutter.package_name }}/conformance_xfail.txt.
"""

from byoc_sdk.conformance import ConformanceSuite


class TestConformance(ConformanceSuite):
    target = {{ cookiecutter.target_name | jsonify }}
