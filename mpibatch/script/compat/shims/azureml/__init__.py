"""mpibatch's stand-in for the parts of the Azure ML SDK that entry scripts use (compat: azureml)."""
