from tests.helpers import create_opportunity


async def test_viewer_and_pipeline(org, live_server):
    opportunity = await create_opportunity(org.seller)
    data = await org.seller.api.data("{ viewer { id role } opportunities { totalCount } }")
    assert data["viewer"] == {"id": org.seller.id, "role": "SELLER"}
    assert data["opportunities"]["totalCount"] == 1
    assert opportunity["status"] == "OPEN"
