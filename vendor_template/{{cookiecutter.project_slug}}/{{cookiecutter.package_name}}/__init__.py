"""byoc backend of {{ cookiecutter.vendor_name }}'s {{ cookiecutter.target_name }}.

Deliberately empty: importing the runtime (which runs packages) must not import the
target or the codegen (which build them), and Python imports this file first.
"""
