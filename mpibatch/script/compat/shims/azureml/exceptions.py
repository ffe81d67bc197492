"""The Azure ML exceptions entry scripts may catch."""


class AzureMLException(Exception):
    """Base of the SDK's errors."""


class ModelNotFoundException(AzureMLException):
    """Raised by Model.get_model_path for a name that is not registered."""


class UserErrorException(AzureMLException):
    """An error in how the SDK was called."""
