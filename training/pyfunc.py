"""The `turkey-policy` MLflow model, logged from code (no pickled Python object): both classifiers, one row
per article. Artifacts: `bundle` (a directory written by `training.bundle.Bundle.save`)."""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class TurkeyPolicyModel(PythonModel):
    def load_context(self, context):
        from training.bundle import Bundle

        self.bundle = Bundle.load(context.artifacts["bundle"])

    # The type hint is MLflow's own cue that the logged signature (not one inferred from hints) governs the input;
    # without it every load prints a "Add type hints to the `predict` method" warning.
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        max_chars = int((params or {}).get("max_chars", 200_000))
        out = self.bundle.predict_frame(model_input, max_chars=max_chars)
        # None, not NaN, for missing values: pandas 3 stores them as NaN, which `mlflow models serve` writes as
        # the non-JSON token NaN.
        return out.astype(object).where(out.notna(), None)


mlflow.models.set_model(TurkeyPolicyModel())
