//! The `http` driver: a client of the Sluice gateway protocol (see
//! [`super::protocol`]).

use super::{Applied, Desired, DriverContext, Gateway, GatewayError, Live};
use crate::config::{Digest, model};
use async_trait::async_trait;

pub struct HttpGateway {}

impl HttpGateway {
    pub fn new(_spec: &model::HttpGateway, _context: &DriverContext) -> Result<Self, GatewayError> {
        Err(GatewayError::Config("the http driver is not built yet".into()))
    }
}

#[async_trait]
impl Gateway for HttpGateway {
    async fn live(&self) -> Result<Live, GatewayError> {
        unimplemented!()
    }
    async fn config(&self) -> Result<Option<String>, GatewayError> {
        unimplemented!()
    }
    async fn apply(
        &self,
        _desired: &Desired,
        _expected: Option<&Digest>,
        _generation: u64,
    ) -> Result<Applied, GatewayError> {
        unimplemented!()
    }
}
