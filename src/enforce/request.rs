//! The OpenAI-compatible chat request, as far as policy reads it: the model
//! and the text of each message. Every other field is kept as received, so
//! what is forwarded is the request the client sent, with only the text
//! changed by redaction.

use super::EnforceError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    /// `temperature`, `max_tokens`, …: passed through untouched.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    /// A string, an array of parts, or absent/`null` (an assistant message
    /// with tool calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// One part of an array content: `{"type": "text", "text": "…"}`, or any
/// other kind (images, …), kept as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl ChatRequest {
    /// Reads a request body. serde_json's recursion limit bounds nesting.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, EnforceError> {
        serde_json::from_slice(body).map_err(EnforceError::Request)
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Each piece of text, in order, with the role of its message.
    pub fn texts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.messages.iter().flat_map(|m| {
            m.texts_ref()
                .into_iter()
                .map(move |text| (m.role.as_str(), text))
        })
    }

    /// Each piece of text, mutably (for redaction).
    pub fn texts_mut(&mut self) -> impl Iterator<Item = &mut String> {
        self.messages.iter_mut().flat_map(|m| match &mut m.content {
            None => Vec::new(),
            Some(Content::Text(text)) => vec![text],
            Some(Content::Parts(parts)) => {
                parts.iter_mut().filter_map(|p| p.text.as_mut()).collect()
            }
        })
    }

    /// Everything that leaves the gateway as text, one piece a line: what
    /// the echo upstream answers.
    pub fn joined_text(&self) -> String {
        self.texts()
            .map(|(_, text)| text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Characters of text, for the audit record.
    pub fn text_chars(&self) -> usize {
        self.texts().map(|(_, t)| t.chars().count()).sum()
    }
}

impl Message {
    fn texts_ref(&self) -> Vec<&str> {
        match &self.content {
            None => Vec::new(),
            Some(Content::Text(text)) => vec![text.as_str()],
            Some(Content::Parts(parts)) => parts.iter().filter_map(|p| p.text.as_deref()).collect(),
        }
    }
}
