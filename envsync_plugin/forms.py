"""The screens' forms (Flask-WTF: every POST carries the CSRF token; htmx sends it as X-CSRFToken)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateTimeLocalField, RadioField, SelectMultipleField
from wtforms.validators import DataRequired, InputRequired, Optional
from wtforms.widgets import CheckboxInput, ListWidget

DIRECTIONS = [("test-to-prod", "TEST → PROD"), ("prod-to-test", "PROD → TEST")]
MODES = [("all", "Synchronize all records"), ("new", "Synchronize only new records")]
#: One line under each mode, in the seed platform's words.
MODE_HELP = {
    "all": "New, modified and deleted records of the source environment are taken into account.",
    "new": "Only records created in the source environment (absent from the target) are taken into account.",
}


class MultiCheckboxField(SelectMultipleField):
    """A list of checkboxes (the module switches); choices are set per request from the module registry."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class SettingsForm(FlaskForm):
    direction = RadioField("Synchronization direction", choices=DIRECTIONS, default="test-to-prod",
                           validators=[InputRequired("Choose the synchronization direction.")])
    mode = RadioField("Records", choices=MODES, default="all",
                      validators=[InputRequired("Choose all records or only new records.")])
    modules = MultiCheckboxField("Modules", choices=[],
                                 validators=[DataRequired("Choose at least one module to synchronize.")])


class ScheduleForm(FlaskForm):
    at = DateTimeLocalField("Date and time", format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"],
                            validators=[Optional()])
    test_import = BooleanField("Test import — changes will not be saved")


class ConfirmForm(FlaskForm):
    """A button that only needs the CSRF token: cancel (HERE), revert."""
