"""The streaming method table and stream-request checks (``connector.desktops.streaming.methods``), pure."""

from __future__ import annotations

import pytest

from connector.desktops.streaming import methods

METHOD = methods.METHODS["streaming_reactive_companion_suggestions"]
PARTICIPANT = "projects/acme-cx/locations/us-central1/conversations/C-1/participants/P-1"


def test_the_one_method_goes_to_the_companion_suggestions_channel() -> None:
    """The sample's method name maps to its WebChannel path on Google's host for the participant's location."""
    target = methods.target_of(methods.method_named("streaming_reactive_companion_suggestions"),
                               {"participant": PARTICIPANT})
    assert (target.project, target.location) == ("acme-cx", "us-central1")
    assert methods.channel_url(target) == (
        "https://us-central1-dialogflow-webchannel.googleapis.com/"
        "google.cloud.dialogflow.v2beta1.Participants/StreamingReactiveCompanionSuggestions/channel")
    assert methods.channel_url(target, "http://127.0.0.1:9/") == (
        "http://127.0.0.1:9/google.cloud.dialogflow.v2beta1.Participants/StreamingReactiveCompanionSuggestions/channel")


@pytest.mark.parametrize(("name", "says"), [
    (None, "must name its method"), ("", "must name its method"), (7, "must be a string"),
    ("streaming_analyze_content", "unknown streaming method 'streaming_analyze_content'"),
])
def test_a_missing_or_unknown_method_is_refused_saying_so(name: object, says: str) -> None:
    with pytest.raises(methods.StreamRefused, match=says):
        methods.method_named(name)


@pytest.mark.parametrize("payload", [
    None, {}, {"participant": 5}, {"participant": "projects/acme-cx/conversations/C-1/participants/P-1"},
    {"participant": "projects/acme-cx/locations/US_CENTRAL/conversations/C"},
    {"participant": "projects/acme-cx/locations/evil.example.com#/conversations/C"},
])
def test_a_participant_without_a_usable_location_is_refused(payload: object) -> None:
    """The location becomes part of a host name, so only a well-formed location id is accepted."""
    with pytest.raises(methods.StreamRefused, match="participant"):
        methods.target_of(METHOD, payload)


def test_response_keys_become_camel_case_at_every_depth() -> None:
    converted = methods.snake_to_camel({
        "reactive_suggestion_results": [{"suggestion_type": "FAQ", "answer_record": "a/b_c"}],
        "sequence_number": 3, "already": {"camelCase": [1, {"x_y_z": None}]},
    })
    assert converted == {
        "reactiveSuggestionResults": [{"suggestionType": "FAQ", "answerRecord": "a/b_c"}],
        "sequenceNumber": 3, "already": {"camelCase": [1, {"xYZ": None}]},
    }
